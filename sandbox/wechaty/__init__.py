"""The local Wechaty puppet service (service.py) and the Node server it runs."""
