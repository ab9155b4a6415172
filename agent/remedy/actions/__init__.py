"""The allow-listed actions, one module per family; `agent.remedy.catalog` is the registry."""
