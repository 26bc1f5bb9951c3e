"""Fault and abuse tests (issue 13): each case failed on the code before its fix."""
