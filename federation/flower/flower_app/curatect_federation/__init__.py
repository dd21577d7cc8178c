"""CurateCT's Flower App: thin entry points into the CurateCT installation."""
