"""Adapters to the outside world: one room per system, and the flows that span them.

``records`` (our frozen records: the only types the console sees), ``errors`` (one hierarchy
with a title and a message), ``defaults``; ``mlflow``, ``docker``, ``prometheus`` (one package
per outside system, none importing another); ``lifecycle`` (operations across systems). No SDK
object crosses this boundary, and nothing here imports textual or the console.
"""
