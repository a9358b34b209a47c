"""`python -m bench`: the numbers behind pg-notify-bridge's claims, from one run on one machine.

See bench/RESULTS.md for what it measures and the latest results, and
`python -m bench --help` for the options.
"""
