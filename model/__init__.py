"""kvheal.model"""
