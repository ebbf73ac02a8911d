"""Avro schemas of every event on Gongji topics (package data: the .avsc files beside this file)."""
