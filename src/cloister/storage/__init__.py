"""Durable key-value storage (layer 3): the SQLite backend and the client services use.

Values are sealed with AES-GCM before they reach the database; queues and watches let the
scheduler and management react to changes without polling.
"""
