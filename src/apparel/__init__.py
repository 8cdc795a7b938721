"""Django Apparel lakehouse: the store database and the operations workbooks, landed as bronze Delta tables
and refined into silver dimensions/facts and gold datamarts with PySpark."""

__version__ = "0.1.0"
