// Cornerstone3D set-up, in the order of its examples: image loader → core → tools.
import * as core from "@cornerstonejs/core";
import * as dicomImageLoader from "@cornerstonejs/dicom-image-loader";
import * as tools from "@cornerstonejs/tools";

import { registerPrefetchingLoader } from "./dicomweb";

let initialised = false;

export async function initCornerstone(): Promise<void> {
  if (initialised) return;
  const cores = navigator.hardwareConcurrency || 2;
  // Raw little-endian CT frames decode in well under a millisecond; a few workers suffice and
  // leave the main thread (and, on small machines, the software WebGL) its cores.
  dicomImageLoader.init({ maxWebWorkers: Math.max(1, Math.min(4, cores - 1)) });
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
