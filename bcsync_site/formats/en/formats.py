"""English date formats with seconds: runs a minute apart, heartbeats and the log must be told apart."""

DATETIME_FORMAT = "N j, Y, H:i:s"
