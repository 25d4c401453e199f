"""Site choice: data locality, butterfly balance, shares. Issue: sites/brokerage/Harvester.

The streaming decision box (streaming/decision_box.py) routes STFs between the two E1s today.
"""
