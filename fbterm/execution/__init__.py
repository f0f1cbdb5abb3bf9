"""Execution (seed module 5): OrderManagement, OrderQueue and the broker adapters."""
