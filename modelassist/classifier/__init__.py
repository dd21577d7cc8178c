"""The scan-level classifier (DESIGN step 9, issue #14 §2): COVID-19 / other pulmonary infection /
no imaging signs of infection, from the scan's HU volume inside the lung mask.

network.py is the 3D CNN of Topff et al. (PLoS ONE 2023), train.py trains it on an export's
training split with validation early stopping, metrics.py holds the test figures (numpy only).
No Django here; the retraining service wires it to exports and model versions.
"""
