"""Fraud and supervision signals (基金监管): the events, windows, buckets and signals (domain) and
the rules over them (rules), both pure, their thresholds in gongji.fraud_settings.FraudSettings, the
inputs read (reading), the buckets in memory backed by a changelog topic (store), and the consumer
loop that runs them over `settlements` and `claims` (service). Importing this package imports no
client."""
