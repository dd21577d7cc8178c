"""CurateCT's Flower App with secure aggregation: thin entry points into the CurateCT installation."""
