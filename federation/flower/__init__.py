"""The Flower side: the Flower App (flower_app/, submitted to the SuperLink as a FAB), its
ServerApp and ClientApp (server.py, client.py), and the processes (federation.processes)."""
