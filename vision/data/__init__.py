"""Image data for EdgeInspect: the synthetic production line and the MVTec AD folder reader."""
