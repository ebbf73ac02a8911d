"""Fraud and supervision signals (基金监管): the events, windows, buckets and signals (domain) and
the rules over them (rules), both pure, their thresholds in gongji.fraud_settings.FraudSettings, the
buckets on faust tables (store), and the faust agents that run them over `settlements` and
`claims` (service). Importing this package imports neither faust nor a client."""
