"""The K2 local stack: pinned JVM artifacts and Go programs, service configs, and the manager behind `k2 stack`."""
