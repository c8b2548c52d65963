"""Chat front-ends; the only code that imports aiogram (and, later, wechaty)."""
