"""gatepass: sell access to chat groups from a chat bot."""
