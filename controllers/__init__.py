"""diffvm.controllers"""
