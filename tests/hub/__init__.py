"""Tests of the Hub: in-memory, Redis, Redis Cluster, many workers."""
