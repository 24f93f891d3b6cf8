"""The K2 local stack: pinned JVM artifacts, service configs, and the process manager behind `k2 stack`."""
