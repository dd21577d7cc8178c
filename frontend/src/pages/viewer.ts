import "../styles/app.css";
import * as core from "@cornerstonejs/core";
console.log(core.getRenderingEngines);
