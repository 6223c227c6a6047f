"""Engine types -> the JSON docker prints and its API answers, one module per resource."""
