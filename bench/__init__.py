"""taskmill benchmark suite: `python -m bench [--quick|--full] [--out PATH]`."""
