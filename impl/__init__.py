"""kvheal.impl"""
