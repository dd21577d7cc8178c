"""Every write of the core domain, one function per operation."""
