"""kvheal.conformance"""
