from payops.db.engine import Database

__all__ = ["Database"]
