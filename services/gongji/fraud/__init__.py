"""Fraud and supervision signals (基金监管): pure rules (domain), their thresholds (config), and the
faust agents that run them over `settlements` and `claims` (app). Importing this package imports
neither faust nor a client."""
