"""Booking agent: turn a free-text request into a reservation, then check it really exists."""

from .pipeline import BookingAgent

__all__ = ["BookingAgent"]
