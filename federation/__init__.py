"""Federated retraining on Flower (issue #15): federation runs declared by a coordinating data
manager, joined by each site's data manager with one of the site's curated exports; the
coordinator's SuperLink and ServerApp aggregate, each site's SuperNode and ClientApp train on the
site's own export. Only model parameters and counts leave a site."""
