// Cornerstone3D set-up, in the order of its examples: image loader → core → tools.
import * as core from "@cornerstonejs/core";
import * as dicomImageLoader from "@cornerstonejs/dicom-image-loader";
import * as tools from "@cornerstonejs/tools";

import { registerPrefetchingLoader } from "./dicomweb";

let initialised = false;

/**
 * Canvas pixels per CSS pixel under software WebGL (SwiftShader, llvmpipe): there a render
 * costs time in proportion to the pixels shaded (0.2–0.8 s for a full-size axial view), so the
 * views render at about the CT's own resolution (a 512² slice in a ~900 px view) and the browser
 * scales the canvas up. With a GPU the device's ratio stays. `?pixelRatio=` overrides it (for
 * measuring).
 */
const SOFTWARE_PIXEL_RATIO = 0.6;

function useSoftwarePixelRatio(): void {
  const asked = Number(new URLSearchParams(window.location.search).get("pixelRatio"));
  const ratio = asked > 0 ? asked : SOFTWARE_PIXEL_RATIO;
  if (!asked && !core.getRenderingCapabilities().softwareRasterizer) return;
  // Cornerstone sizes its canvases and maps canvas ⇄ world points with window.devicePixelRatio
  // everywhere, so one value read by all of it keeps clicks and drawings in register.
  Object.defineProperty(window, "devicePixelRatio", { configurable: true, get: () => ratio });
}

export async function initCornerstone(): Promise<void> {
  if (initialised) return;
  const cores = navigator.hardwareConcurrency || 2;
  // Raw little-endian CT frames decode in well under a millisecond; a few workers suffice and
  // leave the main thread (and, on small machines, the software WebGL) its cores.
  dicomImageLoader.init({ maxWebWorkers: Math.max(1, Math.min(4, cores - 1)) });
  useSoftwarePixelRatio();
  core.init();
  tools.init();
  core.volumeLoader.registerUnknownVolumeLoader(
    core.cornerstoneStreamingImageVolumeLoader as unknown as core.Types.VolumeLoaderFn,
  );
  core.volumeLoader.registerVolumeLoader(
    "cornerstoneStreamingImageVolume",
    core.cornerstoneStreamingImageVolumeLoader as unknown as core.Types.VolumeLoaderFn,
  );
  registerPrefetchingLoader();
  // Every tool the viewer binds, registered once.
  for (const tool of [
    tools.WindowLevelTool,
    tools.PanTool,
    tools.ZoomTool,
    tools.StackScrollTool,
    tools.BrushTool,
  ]) {
    tools.addTool(tool);
  }
  initialised = true;
}
