"""Face detectors behind one interface (RetinaFace, insightface SCRFD); the only home of insightface."""
