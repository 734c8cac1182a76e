-- What every other role sees: 张* and 138****5678.
CREATE OR REPLACE VIEW twin.callers_masked AS
SELECT order_id,
       CASE WHEN name IS NULL THEN NULL
            ELSE left(name, 1) || repeat('*', greatest(char_length(name) - 1, 1)) END AS name,
       CASE WHEN phone IS NULL THEN NULL
            WHEN length(phone) >= 7 THEN left(phone, 3) || repeat('*', length(phone) - 7)
                                         || right(phone, 4)
            ELSE repeat('*', length(phone)) END AS phone,
       erased_at
  FROM twin.order_callers;
