"""The pipeline's steps as plain functions (the commands and the tests call these), and the demo that runs them.

steps.py            stage the data, train (on the SageMaker training contract, in-process), evaluate
registry.py         the model versions kept in WORKDIR/models (content-addressed), champion and challenger
rollout.py          canary and shadow variants on the local endpoint: weight steps, the bake, rollback, compare
deployment.py       deploy the model endpoint and the stack: the local model server off AWS, the promotion
                    (cloud/promote.py) on AWS
demo.py             `scones demo`: every step in one process, with a report
sagemaker_local.py  train and serve the model image with the SageMaker SDK's local mode"""
