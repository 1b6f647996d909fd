"""diffvm.tasks"""
