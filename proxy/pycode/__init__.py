"""Python code in a model's answer: finding it (``extract``) and running it confined
(``sandbox``), for calibration's graders and for a request's own code checks alike."""
