// Shared by every page: the stylesheet. Pages without their own entry load only this.
import "../styles/app.css";
