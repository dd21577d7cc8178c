import { defineConfig } from "vite";

// Django serves the build from frontend/dist through staticfiles (STATIC_URL "/static/");
// pages find the hashed file names in dist/.vite/manifest.json (core/templatetags/vite.py).
export default defineConfig({
  base: "/static/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    manifest: true,
    target: "es2022",
    sourcemap: false,
    // The viewer chunk carries Cornerstone3D + vtk.js (~4 MB); that is expected.
    chunkSizeWarningLimit: 6000,
    rollupOptions: {
      input: {
        base: "src/pages/base.ts",
        worklist: "src/pages/worklist.ts",
        viewer: "src/pages/viewer.ts",
        checks: "src/pages/checks.ts",
        spotChecks: "src/pages/spotChecks.ts",
        findings: "src/pages/findings.ts",
        qcDashboard: "src/pages/qcDashboard.ts",
        manageBatches: "src/pages/manageBatches.ts",
        manageImport: "src/pages/manageImport.ts",
        manageModels: "src/pages/manageModels.ts",
        report: "src/pages/report.ts",
        federation: "src/pages/federation.ts",
      },
    },
  },
  // The DICOM image loader ships its own web worker and wasm codecs: keep it out of the
  // dependency pre-bundler, but pre-bundle the CommonJS dicom-parser it imports.
  optimizeDeps: {
    exclude: ["@cornerstonejs/dicom-image-loader"],
    include: ["dicom-parser"],
  },
  worker: { format: "es" },
});
