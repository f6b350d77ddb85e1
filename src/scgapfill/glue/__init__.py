"""The outer shell: Kedro hooks and datasets, the run record, MLflow tracking and pyfunc, command lines."""
