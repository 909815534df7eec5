"""SQLAlchemy models; importing this package registers every table."""

from app.models.base import Base, UTCDateTime, now_utc
from app.models.environment import DailyEnvStat, Metric, Room, SensorReading, Setpoint
from app.models.notifications import Notification, NotificationKind
from app.models.rentals import Rental, RentalStatus
from app.models.shipments import ShipmentEvent, ShipmentEventKind
from app.models.stages import Stage, StageStatus
from app.models.system import HEALTH_CHECK_HEARTBEAT, Heartbeat
from app.models.tasks import DEFAULT_PERIOD_DAYS, Task, TaskStatus
from app.models.users import User
from app.models.vision import ImageInference, RoomImage

__all__ = [
    "DEFAULT_PERIOD_DAYS",
    "HEALTH_CHECK_HEARTBEAT",
    "Base",
    "DailyEnvStat",
    "Heartbeat",
    "ImageInference",
    "Metric",
    "Notification",
    "NotificationKind",
    "Rental",
    "RentalStatus",
    "Room",
    "RoomImage",
    "SensorReading",
    "Setpoint",
    "ShipmentEvent",
    "ShipmentEventKind",
    "Stage",
    "StageStatus",
    "Task",
    "TaskStatus",
    "UTCDateTime",
    "User",
    "now_utc",
]
