"""API tokens: keys a person makes for scripts, 3D Slicer or OHIF, shown once, expiring, revocable."""
