"""Deployment of the workflow: the CloudFormation template, the deploy script (deploy.py) and running
executions of the deployed state machine (workflow.py). Emulator differences: EMULATORS.md."""
