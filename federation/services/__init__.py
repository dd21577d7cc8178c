"""Federation services: runs (the coordinator), sites (joining, leaving, serving a SuperNode),
rounds (what left a site and what came back). One function per operation; every state change
one transaction with an audit event."""
