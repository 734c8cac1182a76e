"""12345 hotline work orders (市民服务热线工单): placed on the map from their addresses,
moved along the hotline's steps (签收, 先行联系, 答复, 回访) under its duties (首办, 兜底,
指定), their street work done as cases, callers' contacts kept apart, the rates counted.

May import: the root modules, ``twin.store``, ``twin.features`` and ``twin.cases``.
"""
