"""Running the deployed workflow, the one place that does.

    execution.py     one image: upload it (the upload trigger starts the execution) or start an execution,
                     follow it to its end with a deadline, read its result, outcome and named error
    batch.py         many images a few at a time, through the workflow or straight to the endpoint
    prefix_batch.py  every image under an S3 prefix through the batch state machine (the Distributed Map)
    ledger.py        a batch accounted for: every image once, every execution terminal, every request served
    invoke.py        one deployed function invoked alone with an event (`scones invoke`), its log lines

Outcomes, classes and error names come from lambdas/contract.py (Outcome, predicted_class, error_name)."""
