"""Handing captures over: bundles, their verification, uploads and the tshark-backed analysis."""
