#!/usr/bin/env python3
"""Simulates the fleet scenario of the benchmark (200 instances starting within 0.4 s, an IdP
answering 503 for 10 s) under dcr-bootstrap's backoff schedule (src/idp/retry.rs: attempts
anchored to 1, 3, 7, 15, ... s from the first one, each drawn from the last 60 % of its gap,
at most 4 s), and prints, per trial, the busiest 100 ms before and after recovery with four
requests per successful instance (mint, register, two proof requests) and with two (curl's
mint and register). It explains the peak in bench/README.md; it is not a benchmark.

usage: python3 bench/backoff-sim.py [TRIALS]"""
import random
import sys


def attempts(initial=1.0, cap=64.0, spread=0.6, max_window=4.0, n=12):
    times, anchor = [0.0], 0.0
    for i in range(n):
        gap = min(initial * 2 ** i, cap)
        window = min(spread * gap, max_window)
        anchor += gap
        times.append(anchor - window * random.random())
    return times


def peaks(per_success, n=200, spawn=0.4, outage=10.0):
    windows = {}
    for _ in range(n):
        start = random.random() * spawn
        for t in attempts():
            at = start + t
            hits = 1 if at < outage else per_success
            windows[int(at * 10)] = windows.get(int(at * 10), 0) + hits
            if at >= outage:
                break
    before = max(v for w, v in windows.items() if 10 <= w < outage * 10)
    after = max(v for w, v in windows.items() if w >= outage * 10)
    return before, after


trials = int(sys.argv[1]) if len(sys.argv) > 1 else 5
for per_success in (4, 2):
    print(f"{per_success} requests per success:", [peaks(per_success) for _ in range(trials)])
