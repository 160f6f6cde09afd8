"""The host side of Scones Unlimited: the `scones` command line and everything it runs, one subpackage per layer.

    cli/         the commands: each parses its options, calls one function of a layer below, prints
    pipeline/    the pipeline's steps: stage the data, train, deploy, evaluate; `scones demo`; SageMaker local mode
    local/       what `scones up` starts, supervises and records: the embedded emulator (ministack), the model
                 server, the state file, the connection that tells every command where AWS calls go, and the
                 inner loop (the watcher, hot updates, the debugger shim)
    workflow/    running the deployed workflow: one execution, a batch of images, a batch over an S3 prefix
                 (the Distributed Map), the load ledger, one function invoked alone
    monitoring/  what the endpoint and the workflow did: reports, the monitoring page, drift
    console/     the local web console: executions, their graph and path, images, logs, batches (`scones console`)
    errors.py    the errors the commands report and their exit codes

Below these layers and beside this package: cloud/ (the template, deploy and promotion: the only place that
knows resource names; cloud/aws.py's AwsTarget makes every host-side AWS client), lambdas/ (the handlers and
the event contract, lambdas/contract.py, whose vocabulary every layer speaks) and local_model/ (the SageMaker
container: data, model, train, serve, capture)."""
