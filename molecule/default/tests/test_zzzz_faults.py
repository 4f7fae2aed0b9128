"""The fault suite (molecule/faults_suite.py), last in this scenario: it reboots the host and
rolls out a new release."""

from faults_suite import *  # noqa: F403
