"""Rooms, their sensor readings, setpoints and daily statistics (seeds 004 and 005)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class Metric(StrEnum):
    """The metrics the demo sensors report; the columns are plain strings, open to more."""

    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"
    CO2 = "co2"


class Room(Base):
    """A monitored room."""

    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)

    def __repr__(self) -> str:
        return f"<Room {self.id} {self.name!r}>"


class SensorReading(Base):
    """One measurement of one metric in one room."""

    __tablename__ = "sensor_readings"
    __table_args__ = (
        Index("ix_sensor_readings_room_metric_recorded_at", "room_id", "metric", "recorded_at"),
        Index("ix_sensor_readings_recorded_at", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    metric: Mapped[str] = mapped_column(String(32))
    value: Mapped[float]
    recorded_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<SensorReading room={self.room_id} {self.metric}={self.value}>"


class Setpoint(Base):
    """The acceptable range of a metric in a room; a NULL bound is unbounded on that side.

    `value < min_value OR value > max_value` is then naturally false for a NULL bound in SQL.
    """

    __tablename__ = "setpoints"
    __table_args__ = (UniqueConstraint("room_id", "metric", name="uq_setpoints_room_metric"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    metric: Mapped[str] = mapped_column(String(32))
    min_value: Mapped[float | None]
    max_value: Mapped[float | None]

    def __repr__(self) -> str:
        return f"<Setpoint room={self.room_id} {self.metric} [{self.min_value}, {self.max_value}]>"


class DailyEnvStat(Base):
    """Min/max/avg/count of one metric in one room over one day (UTC dates unless stated)."""

    __tablename__ = "daily_env_stats"
    __table_args__ = (
        UniqueConstraint("room_id", "metric", "day", name="uq_daily_env_stats_room_metric_day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    metric: Mapped[str] = mapped_column(String(32))
    day: Mapped[date]
    min_value: Mapped[float]
    max_value: Mapped[float]
    avg_value: Mapped[float]
    count: Mapped[int]

    def __repr__(self) -> str:
        return f"<DailyEnvStat room={self.room_id} {self.metric} {self.day}>"
