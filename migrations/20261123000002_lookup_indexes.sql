-- Lookups the service needs beyond the aggregates' streams: the licenses of
-- a tenant, and the license of a session. Partial expression indexes keep
-- them small (one entry per license, one per acquired session).
CREATE INDEX events_license_issued_by_tenant ON events ((metadata->>'tenant_id'))
    WHERE event_type = 'LicenseIssued';
CREATE INDEX events_seat_acquired_by_session ON events ((data->>'session_id'))
    WHERE event_type = 'SeatAcquired';
