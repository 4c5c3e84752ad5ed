"""Acting on systems of record: connectors, the ledger, the decision store and the executor."""
